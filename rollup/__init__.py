"""Energy rollups: hourly (UTC) and daily (site time zone) aggregates of the energy readings."""
