"""Video data pipeline: decoding, vision preprocessing, tokenizer, chat template, records, grain loaders."""
