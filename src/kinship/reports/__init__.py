"""Views for people: self-contained HTML reports (no external assets, no network).

`page` holds the shared page chrome (HTML skeleton, screen and A4 print styles, the
colour-blind-safe palette); `case` renders an investigator's case report from a
FindRelatives answer; `evaluation` renders `kinship eval`'s result as curves and tables.
"""
