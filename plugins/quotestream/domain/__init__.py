"""The quote domain in pure Python, no I/O: quotes, validation, tables, ledger, simulated market."""

from quotestream.domain.pairs import DEFAULT_PAIRS, PAIR_CATALOG, PairSpec
from quotestream.domain.quote import Quote, make_event_id
from quotestream.domain.validation import InvalidQuote, Reason, parse_quote, quote_from_mapping

__all__ = [
    "DEFAULT_PAIRS",
    "PAIR_CATALOG",
    "InvalidQuote",
    "PairSpec",
    "Quote",
    "Reason",
    "make_event_id",
    "parse_quote",
    "quote_from_mapping",
]
