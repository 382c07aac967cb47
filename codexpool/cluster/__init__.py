"""Several gateway nodes on one database: node registry, account leases, logins kept in the
database, and forwarding to the account's owner (issue 18). Off unless `clusterSecret` is set."""
