"""Search quality (issue #14): does log search ``q`` find the lines people mean? Row Q of ``bench.run``.

A fixed corpus of real log lines (``bench/corpus/lines.jsonl``, rebuilt by ``python -m bench.quality.build_corpus``)
is loaded through the API into one job; queries of many kinds (``queries``), picked deterministically from it,
are run through ``GET /jobs/:id/logs?q=…`` and the lines returned are compared with two ground truths
(``truth``): word parts (what a person means by "this word appears") and grep (case-insensitive substring).

- ``python -m bench.quality [--verbose [N]] [--source DIR]``: standalone, starts its own service;
- ``python -m bench.run --only Q``: the row of the bench runner, on the run's service.

Modules: ``corpus`` (the line type and file), ``build_corpus``, ``truth``, ``queries``, ``measure`` (the HTTP
side), ``score`` (figures and printouts), ``suite`` (corpus + truths + queries), ``scenario`` (row Q).
"""
