"""The LLM seam: the only package that imports openai."""
