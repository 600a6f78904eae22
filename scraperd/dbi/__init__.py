"""The DBI target: table specs, the DBI tables built from them, and writing and reading records.

    spec.py     .spec files (DybDbi's CSV) -> Spec; pure
    tables.py   Spec -> the <T>, <T>Vld and LOCALSEQNO Tables; create_tables, drop_tables, ddl
    writer.py   Record -> one Vld row + payload rows + LOCALSEQNO, in one transaction
    reader.py   context query, last validity record of a context, payload of a SEQNO

Everything written here stays readable by DBI and DybDbi: the table layout is theirs. What differs
is how it is written (InnoDB transactions, row locks), never what is stored.
"""
