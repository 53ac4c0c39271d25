"""CLM: self-hosted Customer Lifecycle Management."""
