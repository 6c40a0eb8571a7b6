"""HTTP layers: they translate HTTP to domain calls and back, and hold no business rules."""
