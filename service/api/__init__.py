"""Service routers (thin: validation and wiring; logic lives in service functions)."""
