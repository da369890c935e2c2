"""Who is attacking: geo/ASN lookups, Tor exits, network kind and the threat rating."""
