"""Portfolios: a lender's sources, features, labels and models as one validated declarative file."""
