"""Prices of model calls, from genai-prices' shipped data (offline), with overrides from settings.

Costs are kept in integer nanodollars (1e-9 $) from here on: the ledger, the metrics and the responses add
the same integers, so their totals agree exactly for the same traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price

NANOS_PER_DOLLAR = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Price:
    nanodollars: int
    priced: bool  # False: the model is unknown to genai-prices and to the overrides; cost 0 is counted apart


def nanos_to_dollars(nanos: int) -> float:
    return nanos / NANOS_PER_DOLLAR


def dollars_text(nanos: int) -> str:
    """An amount as it is, for people: cents always shown, smaller digits only when there are some
    (``$5.00``, ``$0.0001``, ``$1,234.567891``), never rounded to a misleading ``$0.00``."""
    amount = (Decimal(nanos) / NANOS_PER_DOLLAR).normalize()
    exponent = amount.as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"${amount:,.{places}f}"


@lru_cache(maxsize=1024)
def _per_token_nanos(model: str) -> tuple[Decimal, Decimal] | None:
    """Nanodollars per input and per output token, or None if genai-prices does not know the model."""
    million = 1_000_000
    try:
        result = calc_price(Usage(input_tokens=million, output_tokens=million), model_ref=model)
    except LookupError:
        return None
    # Price a million of each, then scale: per-token prices as exact Decimals.
    return result.input_price * NANOS_PER_DOLLAR / million, result.output_price * NANOS_PER_DOLLAR / million


class Pricer:
    """``overrides``: model -> (dollars per million input tokens, per million output tokens)."""

    def __init__(self, overrides: dict[str, tuple[float, float]]) -> None:
        self._overrides = {
            model: (Decimal(str(i)) * 1000, Decimal(str(o)) * 1000) for model, (i, o) in overrides.items()
        }

    def price(self, model: str, input_tokens: int, output_tokens: int) -> Price:
        rates = self._overrides.get(model) or _per_token_nanos(model)
        if rates is None:
            return Price(0, priced=False)
        per_input, per_output = rates
        return Price(
            int((per_input * input_tokens + per_output * output_tokens).to_integral_value()), priced=True
        )
