"""A Prometheus metric store for one process or many: the library the monitoring feature is built on.

It knows nothing of the application (a test holds that: nothing here imports ``agentic_backend`` outside
this package). The parts:

- ``families``: ``MetricSpec`` (name, type, help, labels, buckets), ``Family[S]`` (all series of one
  metric, typed by its series: ``Family[HistogramSeries]`` observes, ``Family[Series]`` counts and sets)
  and the series, which update floats in place in a page of a store.
- ``storage``: the page stores: a process's own memory, or memory-mapped files shared by ``serve
  --workers N`` (one file per worker, a journal of which label set lives in which slot).
- ``registry``: every family of one store, with a series cap per metric that folds the excess into an
  ``__overflow__`` series instead of growing without bound.
- ``merge`` and ``multiprocess``: one view over every worker's pages (sums, maxima, the values of workers
  that died kept), merged in time slices that never hold the event loop for long.
- ``exposition`` and ``naming``: the text format 0.0.4 and OpenMetrics 1.0, with exemplars
  (``exemplars``); names and label values checked as Prometheus does.
- ``rundir`` and ``timeslice``: a run's shared folder, and cooperative slicing of long work.

Why not prometheus_client: its per-update lock and object walk cost the hot path microseconds per request
(a naive prometheus_client middleware serves 93.7 % of bare FastAPI's throughput, this store 97.3 %:
``python -m bench.http_overhead``); ``generate_latest`` renders every label set on each scrape in one call
that holds the event loop (5,000 series: 32 ms against 1.6 ms here, 19-20x at 50,000: ``python -m
bench.exposition``); and its multiprocess mode re-reads every worker's files per scrape (4 workers x
5,000 series: 174 ms against 2.3 ms, 74x: ``python -m bench.scrape_merge``). What it writes is checked
against prometheus_client's own parsers and ``promtool check metrics``.
"""
