"""HTTP endpoints, one blueprint per area: the page, the JSON API, health."""
