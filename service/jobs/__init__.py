"""Jobs: SQL model and store, Ray executor, reconciler and progress events."""
