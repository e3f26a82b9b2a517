"""What a model is judged by, the same way in training and in serving: the gate's metrics
(`scoring.py`) and the labels they compare outputs with (`labels.py`).

The training's evaluation gate and the model server's live metric both import this
package; it imports neither of them (only `api` for the labels' declarations).
"""
