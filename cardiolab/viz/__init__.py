"""HoloViews plots of sessions, beats and cohort models (no Panel here)."""
