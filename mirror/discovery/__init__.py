"""Discovery: what to copy. Catalogs and tags, Helm indexes, legacy pack servers, pack
folders, the images packs and charts run, pack dependencies and signatures. Each returns
`Found` artifacts with the store to read them from; none writes to a store."""
