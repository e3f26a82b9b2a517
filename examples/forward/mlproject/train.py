"""Will this rider order again? A logistic regression on the platform's training set.

The platform passes the point-in-time training set (train and test Parquet files), the
target column and the feature columns in model input order; this project fits, scores and
logs an MLflow model whose pyfunc returns the probabilities of both classes per row
(`predict_proba`, columns in the order of `classes_`), as its signature says.
"""

from __future__ import annotations

import argparse

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.metrics import accuracy_score, roc_auc_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--features", required=True, help="comma-separated, in input order")
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularization strength")
    parser.add_argument("--max-iter", type=float, default=200)
    parser.add_argument("--seed", type=float, default=7)
    parser.add_argument(
        "--trees", type=float, default=0, help="> 0: a random forest of this many trees instead"
    )
    args = parser.parse_args()

    features = args.features.split(",")
    train = pd.read_parquet(args.train)
    test = pd.read_parquet(args.test)
    # Missing values (a rider with no history yet) stay NaN and are imputed inside the
    # model, so serving can send NaN for a missing feature and get the same treatment.
    x_train, x_test = train[features].astype("float64"), test[features].astype("float64")
    if args.trees > 0:
        # Larger and slower to predict (each tree is walked): the rollout tests' slow canary.
        model = make_pipeline(
            SimpleImputer(strategy="median"),
            RandomForestClassifier(n_estimators=int(args.trees), random_state=int(args.seed)),
        )
    else:
        model = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(C=args.c, max_iter=int(args.max_iter), random_state=int(args.seed)),
        )
    model.fit(x_train, train[args.target])
    probabilities = model.predict_proba(x_test)[:, 1]
    mlflow.log_metric("train_rows", len(train))
    mlflow.log_metric("project_roc_auc", float(roc_auc_score(test[args.target], probabilities)))
    mlflow.log_metric("project_accuracy", float(accuracy_score(test[args.target], probabilities >= 0.5)))
    mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(x_train, model.predict_proba(x_train)),
        pyfunc_predict_fn="predict_proba",
        # The imputer records numpy dtypes, a forest its trees (written here, by this run).
        skops_trusted_types=["numpy.dtype", "sklearn.tree._tree.Tree"],
    )


if __name__ == "__main__":
    main()
