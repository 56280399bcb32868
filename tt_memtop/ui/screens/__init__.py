"""Modal screens: help, buffer details, filters, jump-to-id, sort menu."""
