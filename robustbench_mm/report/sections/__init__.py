"""One module per report section."""
