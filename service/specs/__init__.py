"""Specs: Markdown policies with parameters in their front matter."""
