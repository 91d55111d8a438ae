"""Pricing: turn usage into money.

The ``Pricer`` protocol is what the governor calls; ``StaticPricer`` prices
from an explicit table (negotiated rates, self-hosted models, tests). The
genai-prices catalog pricer arrives with the price-catalog issue.
"""

from allotment.pricing.base import Price, Pricer
from allotment.pricing.static import ModelRate, StaticPricer

__all__ = ["ModelRate", "Price", "Pricer", "StaticPricer"]
