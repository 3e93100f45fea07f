"""Beat-level signal processing (work in progress for the beats and features stage)."""
