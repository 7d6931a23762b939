"""Builders of small, real Orchard homes shared by the tests and the benchmarks (nothing in the lifecycle uses it).

- demo: the demo portfolio's sources and models, and variants of it for small lakes;
- serving_home: a small lifecycle home with registered champions and a Feast online store, for the decision API;
- services: the local PostgreSQL and Redis the production profile's tests and benchmarks use.
"""
