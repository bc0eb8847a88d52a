"""What the services and applications of the suite mean alike, in one place below them all.

`people`: the relations and sexes (and their kinship.v1 numbers); `faces`: which face a
photo is about; `verbal`: the words for a likelihood ratio. Plain Python over the
generated contracts: no grpc, no Milvus, no service imports.
"""
