"""Data, the pipeline's first floor: the shard format (`format`), the typed manifest (`manifest`), the
resumable collector (`collect`), the windowed training dataset (`dataset`), dataset summaries (`stats`)
and the real contexts dreams start from (`context`). Token shards share the format; the tokenizer writes
them (`genie_env.models.tokenize`)."""
