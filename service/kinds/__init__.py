"""Decision kinds: one module each; `service.kinds.registry.KINDS` lists them."""
