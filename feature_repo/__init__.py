"""Orchard's Feast repository: entities, views and feature services compiled from a portfolio."""
