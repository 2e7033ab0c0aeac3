"""Unit parsing: training token budgets (decimal suffixes, up to 10^15)."""

import pytest


def test_training_token_budgets_are_decimal_and_large():
    from vramplan.units import parse_token_budget

    assert parse_token_budget("15T") == 15 * 10 ** 12
    assert parse_token_budget("1000m") == parse_token_budget("1b") == parse_token_budget("1e9") == 10 ** 9
    assert parse_token_budget("300k") == 300_000 and parse_token_budget(12345) == 12345
    assert parse_token_budget("8.2b") == 8_200_000_000 and parse_token_budget("4.1m") == 4_100_000
    assert all(parse_token_budget(f"{i / 100:.2f}b") == i * 10 ** 7 for i in range(1, 1000))
    for bad in ("2e15", "0", "-5", "1.5", "lots", True):
        with pytest.raises(ValueError):
            parse_token_budget(bad)


def test_cli_takes_trillion_token_budgets(run_cli):
    import json

    code, out, _ = run_cli("speed", "llama-3.1-8b", "--gpu", "h100", "--training-tokens", "15T", "--json")
    assert code == 0 and json.loads(out)["training"]["tokens"] == 15 * 10 ** 12
