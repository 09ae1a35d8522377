"""The whole ASTRO recipe as one resumable, hash-keyed stage graph (`astro pipeline`, `astro demo`)."""
