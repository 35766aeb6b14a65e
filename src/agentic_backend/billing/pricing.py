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


@dataclass(frozen=True, slots=True)
class Rates:
    """Nanodollars per token: input, output, and input read from or written to the provider's prompt
    cache (parts of the input, priced apart)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


# Rates are taken at this many tokens, below every provider's long-context tier; a call with more input
# than _TIERED is priced by genai-prices itself, tiers and all (a few hundred microseconds, where the
# cached rates take one).
_SAMPLE = 1_000
_TIERED = 100_000


@lru_cache(maxsize=1024)
def _rates(model: str) -> Rates | None:
    """The model's rates from genai-prices, or None if it does not know the model."""
    try:
        plain = calc_price(Usage(input_tokens=_SAMPLE, output_tokens=_SAMPLE), model_ref=model)
        read = calc_price(Usage(input_tokens=_SAMPLE, cache_read_tokens=_SAMPLE), model_ref=model)
        write = calc_price(Usage(input_tokens=_SAMPLE, cache_write_tokens=_SAMPLE), model_ref=model)
    except LookupError:
        return None
    per = Decimal(NANOS_PER_DOLLAR) / _SAMPLE
    return Rates(
        plain.input_price * per, plain.output_price * per, read.input_price * per, write.input_price * per
    )


@dataclass(frozen=True, slots=True)
class Tokens:
    """A model call's usage as providers bill it: ``cache_read`` and ``cache_write`` are parts of
    ``input``, ``reasoning`` a part of ``output`` (priced as output)."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


class Pricer:
    """``overrides``: model -> (dollars per million input tokens, per million output tokens); an override's
    cached input costs its input price."""

    def __init__(self, overrides: dict[str, tuple[float, float]]) -> None:
        self._overrides = {}
        for model, (i, o) in overrides.items():
            per_input = Decimal(str(i)) * 1000
            self._overrides[model] = Rates(per_input, Decimal(str(o)) * 1000, per_input, per_input)

    def price(self, model: str, input_tokens: int, output_tokens: int) -> Price:
        return self.cost(model, Tokens(input_tokens, output_tokens))

    def cost(self, model: str, tokens: Tokens) -> Price:
        """What a call with ``tokens`` costs ``model`` (the overrides' price first, then genai-prices)."""
        rates = self._overrides.get(model)
        if rates is None and tokens.input > _TIERED:
            exact = _exact(model, tokens)
            if exact is not None:
                return exact
        rates = rates or _rates(model)
        if rates is None:
            return Price(0, priced=False)
        fresh = max(0, tokens.input - tokens.cache_read - tokens.cache_write)
        nanos = (
            rates.input * fresh
            + rates.cache_read * tokens.cache_read
            + rates.cache_write * tokens.cache_write
            + rates.output * tokens.output
        )
        return Price(int(nanos.to_integral_value()), priced=True)

    def bound(self, model: str, input_tokens: int, output_tokens: int) -> Price:
        """The most a call can cost: every input token at the dearest input rate (a cache write's)."""
        return self.cost(model, Tokens(input_tokens, output_tokens, cache_write=input_tokens))


def _exact(model: str, tokens: Tokens) -> Price | None:
    usage = Usage(
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
    )
    try:
        result = calc_price(usage, model_ref=model)
    except LookupError:
        return None
    return Price(int((result.total_price * NANOS_PER_DOLLAR).to_integral_value()), priced=True)
