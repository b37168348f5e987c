"""Generated from proto/core/v1alpha1/*.proto: do not edit (make proto)."""
