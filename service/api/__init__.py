"""HTTP routes: thin, validate and call the engine or a store."""
