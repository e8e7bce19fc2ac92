"""Scenario builders shared by notebooks, the CLI and tests."""
