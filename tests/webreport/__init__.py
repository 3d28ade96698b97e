"""Tests of minescape.webreport (the offline run report)."""
