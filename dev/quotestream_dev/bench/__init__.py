"""`quotestream bench ...`: figures measured side by side against a baseline in one run."""
