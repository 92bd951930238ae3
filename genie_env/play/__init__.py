"""Playing the dream: one player's session (`session.py`), under `genie play`'s pygame window or
`genie serve`'s web page (`web.py`, with the page in `static/`)."""
