"""Who is calling: signed tokens and identities, and the routes that hand them out."""
