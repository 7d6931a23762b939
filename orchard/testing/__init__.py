"""Builders of small, real Orchard homes shared by the tests and the benchmarks (nothing in the lifecycle uses it).

- demo: the demo portfolio's sources and models, and variants of it for small lakes;
- small_lifecycle: the demo portfolio on a small window, run through `orchard demo` (the tests share one run);
- serving_home: the decision API on a small lifecycle home (a copy of it in the tests);
- services: the local PostgreSQL and Redis the production profile's tests and benchmarks use.
"""
