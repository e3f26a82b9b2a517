"""The Apache Beam pipeline of a FeatureManifest.

    read (compiled SQL: DuckDB for files; BigQuery's own engine for BigQuery sources)
      -> split rows carrying an error (counted, never written)
      -> batches of history rows            -> offline store
      -> latest row per entity (combine)    -> online store

DirectRunner runs it on one machine, FlinkRunner on an embedded or real Flink cluster,
DataflowRunner in production. Stores are opened inside the workers from their URIs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import ERROR, Range, history_sql
from lykeion.features.materialize import RunResult, iso_or_none, query_history
from lykeion.features.online.base import OnlineRow
from lykeion.features.online.codec import arrow_schema
from lykeion.features.stores import open_offline, open_online
from lykeion.features.view import EVENT_TIME, KEY, FeatureView

NAMESPACE = "lykeion"
BATCH = 5000


class ReadHistory(beam.DoFn):
    """Runs the compiled SQL where the data is and emits its rows."""

    def __init__(
        self, spec_json: str, start: datetime | None, end: datetime | None, data_root: str | None
    ):
        self.spec_json = spec_json
        self.range = Range(start, end)
        self.data_root = data_root
        self.rows_read = Metrics.counter(NAMESPACE, "rows_read")

    def process(self, _: Any) -> Iterator[dict[str, Any]]:
        spec = FeatureManifestSpec.model_validate_json(self.spec_json)
        table = query_history(spec, self.range, self.data_root)
        for batch in table.to_batches(max_chunksize=BATCH):
            rows = batch.to_pylist()
            self.rows_read.inc(len(rows))
            yield from rows


class SplitBad(beam.DoFn):
    BAD = "bad"

    def __init__(self) -> None:
        self.bad_rows = Metrics.counter(NAMESPACE, "bad_rows")

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        if row[ERROR] is not None:
            self.bad_rows.inc()
            yield beam.pvalue.TaggedOutput(
                self.BAD, f"{row[KEY]!r} at {row[EVENT_TIME]}: {row[ERROR]}"
            )
            return
        yield {k: v for k, v in row.items() if k != ERROR}


class _StoreWriter(beam.DoFn):
    def __init__(self, uri: str, view: FeatureView, counter: str):
        self.uri = uri
        self.view = view
        self.counter = Metrics.counter(NAMESPACE, counter)
        self.store: Any = None

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()


class WriteOffline(_StoreWriter):
    def setup(self) -> None:
        self.store = open_offline(self.uri)
        self.schema = arrow_schema(self.view)

    def process(self, batch: list[dict[str, Any]]) -> None:
        table = pa.Table.from_pylist(batch, schema=self.schema)
        self.counter.inc(self.store.write_history(self.view, table))


class WriteOnline(_StoreWriter):
    def setup(self) -> None:
        self.store = open_online(self.uri)

    def process(self, batch: list[dict[str, Any]]) -> None:
        names = self.view.feature_names
        rows = [OnlineRow(r[KEY], r[EVENT_TIME], {n: r[n] for n in names}) for r in batch]
        self.counter.inc(self.store.write(self.view, rows))


class Latest(beam.CombineFn):
    """The row with the greatest event time (one per key and time after the SQL)."""

    def create_accumulator(self) -> dict[str, Any] | None:
        return None

    def add_input(self, best: dict[str, Any] | None, row: dict[str, Any]) -> dict[str, Any]:
        return row if best is None or row[EVENT_TIME] > best[EVENT_TIME] else best

    def merge_accumulators(
        self, accumulators: Iterable[dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        best = None
        for candidate in accumulators:
            if candidate is not None:
                best = self.add_input(best, candidate)
        return best

    def extract_output(self, best: dict[str, Any] | None) -> dict[str, Any] | None:
        return best


class CountRead(beam.DoFn):
    def __init__(self) -> None:
        self.rows_read = Metrics.counter(NAMESPACE, "rows_read")

    def process(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.rows_read.inc()
        yield row


def read_bigquery(spec: FeatureManifestSpec, run_range: Range) -> beam.io.ReadFromBigQuery:
    """A BigQuery source is computed where it lives: the manifest's BigQuery SQL runs as a
    query job and its rows stream back through the Storage Read API (no GCS export)."""
    return beam.io.ReadFromBigQuery(
        query=history_sql(spec, "bigquery", run_range),
        use_standard_sql=True,
        method=beam.io.ReadFromBigQuery.Method.DIRECT_READ,
    )


def build(
    p: beam.Pipeline,
    spec: FeatureManifestSpec,
    view: FeatureView,
    run_range: Range,
    offline_uri: str,
    online_uri: str,
    data_root: str | None,
) -> Any:
    if spec.source.bigquery is not None:
        rows = (
            p
            | "ReadHistory" >> read_bigquery(spec, run_range)
            | "CountRead" >> beam.ParDo(CountRead())
        )
    else:
        rows = (
            p
            | "Start" >> beam.Create([None])
            | "ReadHistory"
            >> beam.ParDo(
                ReadHistory(spec.model_dump_json(), run_range.start, run_range.end, data_root)
            )
        )
    split = rows | "SplitBad" >> beam.ParDo(SplitBad()).with_outputs(SplitBad.BAD, main="good")
    good = split.good
    _ = (
        good
        | "BatchHistory" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
        | "WriteOffline" >> beam.ParDo(WriteOffline(offline_uri, view, "rows_written"))
    )
    _ = (
        good
        | "ByEntity" >> beam.Map(lambda row: (row[KEY], row))
        | "LatestPerEntity" >> beam.CombinePerKey(Latest())
        | "Values" >> beam.Values()
        | "BatchLatest" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
        | "WriteOnline" >> beam.ParDo(WriteOnline(online_uri, view, "online_rows"))
    )
    return split[SplitBad.BAD]


def run_beam(
    spec: FeatureManifestSpec,
    view: FeatureView,
    run_range: Range,
    offline_uri: str,
    online_uri: str,
    data_root: str | None = None,
    beam_args: list[str] | None = None,
) -> RunResult:
    started = time.perf_counter()
    result = RunResult(iso_or_none(run_range.start), iso_or_none(run_range.end))
    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, spec, view, run_range, offline_uri, online_uri, data_root)
    outcome = pipeline.run()
    outcome.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed if c.committed is not None else c.attempted
        for c in outcome.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    result.rows_read = int(counters.get("rows_read", 0))
    result.bad_rows = int(counters.get("bad_rows", 0))
    result.rows_written = int(counters.get("rows_written", 0))
    result.online_rows = int(counters.get("online_rows", 0))
    result.duration_seconds = time.perf_counter() - started
    result.succeeded = True
    result.message = f"{result.rows_written} history rows, {result.online_rows} entities online"
    return result
