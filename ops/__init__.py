"""Operating Thuis: certificates, the local stack, migrations, the registry, service roles and accounts."""
