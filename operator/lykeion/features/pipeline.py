"""The Apache Beam pipeline of a FeatureManifest.

    read (compiled SQL: DuckDB for files; BigQuery's own engine for BigQuery sources)
      -> history rows: split rows carrying an error (counted, never written)
                       -> batches                         -> offline store
      -> online rows (one per key and step, windows.online_sql)
                       -> per key: the row and its steps  -> online store

DirectRunner runs it on one machine, FlinkRunner on an embedded or real Flink cluster,
DataflowRunner in production. Stores are opened inside the workers from their URIs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import ERROR, ROWS, Range, history_sql
from lykeion.features.materialize import RunResult, iso_or_none, online_row, query_run
from lykeion.features.view import EVENT_TIME, KEY, FeatureView
from lykeion.features.windows import online_sql
from lykeion.stores import open_offline, open_online
from lykeion.stores.offline.tables import history_schema
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.codec import from_micros, to_micros

NAMESPACE = "lykeion"
BATCH = 5000


class ReadHistory(beam.DoFn):
    """Runs the compiled SQL where the data is (DuckDB, in the worker) and emits its
    history rows, and its online rows tagged `ONLINE`."""

    ONLINE = "online"

    def __init__(
        self,
        spec_json: str,
        view: FeatureView,
        start: datetime | None,
        end: datetime | None,
        data_root: str | None,
    ):
        self.spec_json = spec_json
        self.view = view
        self.range = Range(start, end)
        self.data_root = data_root

    def process(self, _: Any) -> Iterator[Any]:
        spec = FeatureManifestSpec.model_validate_json(self.spec_json)
        history, online = query_run(spec, self.view, self.range, self.data_root)
        for batch in history.to_batches(max_chunksize=BATCH):
            yield from batch.to_pylist()
        for batch in online.to_batches(max_chunksize=BATCH):
            for row in batch.to_pylist():
                yield beam.pvalue.TaggedOutput(self.ONLINE, row)


class SplitBad(beam.DoFn):
    """Counts source rows (a history row stands for `_rows` of them) and duplicates, and
    splits off the rows that carry an error."""

    BAD = "bad"

    def __init__(self) -> None:
        self.rows_read = Metrics.counter(NAMESPACE, "rows_read")
        self.bad_rows = Metrics.counter(NAMESPACE, "bad_rows")
        self.duplicate_rows = Metrics.counter(NAMESPACE, "duplicate_rows")
        self.event_times = Metrics.distribution(NAMESPACE, "event_time_micros")

    def process(self, row: dict[str, Any]) -> Iterator[Any]:
        if row[ERROR] is not None:
            self.rows_read.inc()
            self.bad_rows.inc()
            yield beam.pvalue.TaggedOutput(
                self.BAD, f"{row[KEY]!r} at {row[EVENT_TIME]}: {row[ERROR]}"
            )
            return
        self.rows_read.inc(row[ROWS])
        self.duplicate_rows.inc(row[ROWS] - 1)
        self.event_times.update(to_micros(row[EVENT_TIME]))
        yield {k: v for k, v in row.items() if k not in (ERROR, ROWS)}


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
        self.schema = history_schema(self.view)

    def process(self, batch: list[dict[str, Any]]) -> None:
        table = pa.Table.from_pylist(batch, schema=self.schema)
        self.counter.inc(self.store.write_history(self.view, table))


class WriteOnline(_StoreWriter):
    def setup(self) -> None:
        self.store = open_online(self.uri)

    def process(self, batch: list[OnlineRow]) -> None:
        self.counter.inc(self.store.write(self.view, batch))


def read_bigquery(query: str) -> beam.io.ReadFromBigQuery:
    """A BigQuery source is computed where it lives: the compiled SQL runs as a query job
    and its rows stream back through the Storage Read API (no GCS export)."""
    return beam.io.ReadFromBigQuery(
        query=query, use_standard_sql=True, method=beam.io.ReadFromBigQuery.Method.DIRECT_READ
    )


def bigquery_online_sql(spec: FeatureManifestSpec, view: FeatureView, run_range: Range) -> str:
    """`windows.online_sql` over the valid history rows of the range and its lookback."""
    history = history_sql(spec, "bigquery", run_range, with_lookback=True)
    valid = f"SELECT * EXCEPT ({ERROR}, {ROWS}) FROM ({history}) WHERE {ERROR} IS NULL"
    return online_sql(view, "bigquery", "__valid", run_range.start, define=valid)


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
        rows = p | "ReadHistory" >> read_bigquery(history_sql(spec, "bigquery", run_range))
        online = p | "ReadOnline" >> read_bigquery(bigquery_online_sql(spec, view, run_range))
    else:
        read = (
            p
            | "Start" >> beam.Create([None])
            | "ReadHistory"
            >> beam.ParDo(
                ReadHistory(spec.model_dump_json(), view, run_range.start, run_range.end, data_root)
            ).with_outputs(ReadHistory.ONLINE, main="history")
        )
        rows, online = read.history, read[ReadHistory.ONLINE]
    split = rows | "SplitBad" >> beam.ParDo(SplitBad()).with_outputs(SplitBad.BAD, main="good")
    good = split.good
    _ = (
        good
        | "BatchHistory" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
        | "WriteOffline" >> beam.ParDo(WriteOffline(offline_uri, view, "rows_written"))
    )
    _ = (
        online
        | "ByEntity" >> beam.Map(lambda row: (row[KEY], row))
        | "StepsPerEntity" >> beam.GroupByKey()
        | "OnlineRow" >> beam.MapTuple(lambda _, rows: online_row(view, list(rows)))
        | "BatchOnline" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
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
    metrics = outcome.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    counters = {
        c.key.metric.name: c.committed if c.committed is not None else c.attempted
        for c in metrics["counters"]
    }
    for distribution in metrics["distributions"]:
        value = distribution.committed or distribution.attempted
        if distribution.key.metric.name == "event_time_micros" and value and value.count:
            result.max_event_time = iso_or_none(from_micros(value.max))
    result.rows_read = int(counters.get("rows_read", 0))
    result.bad_rows = int(counters.get("bad_rows", 0))
    result.duplicate_rows = int(counters.get("duplicate_rows", 0))
    result.rows_written = int(counters.get("rows_written", 0))
    result.online_rows = int(counters.get("online_rows", 0))
    result.duration_seconds = time.perf_counter() - started
    result.succeeded = True
    result.message = f"{result.rows_written} history rows, {result.online_rows} entities online"
    return result
