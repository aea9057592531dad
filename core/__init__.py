"""Shared by every process: settings, wire schemas, arXiv ids, taxonomy, errors.

Nothing here imports torch, Kafka or SQLAlchemy, so the ingester stays small.
"""
