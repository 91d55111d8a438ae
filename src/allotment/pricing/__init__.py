"""Pricing: turn usage into money.

The ``Pricer`` protocol is what the governor calls. ``CatalogPricer`` (the
default) prices from overrides, then the bundled genai-prices catalog, then a
flagged conservative fallback; ``StaticPricer`` prices from an explicit table
only (in any currency).
"""

from allotment.pricing.base import Price, Pricer
from allotment.pricing.catalog import CATALOG_VERSION, CatalogPricer, PriceOverride, resolve_model
from allotment.pricing.static import ModelRate, StaticPricer

__all__ = [
    "CATALOG_VERSION",
    "CatalogPricer",
    "ModelRate",
    "Price",
    "PriceOverride",
    "Pricer",
    "StaticPricer",
    "resolve_model",
]
