"""What the portal does, shared by the JSON API (routes/) and the pages (web/); each calls its queries."""
