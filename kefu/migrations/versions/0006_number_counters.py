"""business numbers from a counter per prefix

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:10:00.000000

``number_counters`` (prefix, value): ticket, after-sale and invoice-request numbers of the day are handed out by
raising the prefix's counter under its row lock, so concurrent transactions never get the same number
(kefu/services/numbering.py). Existing numbers need no backfill: a counter starts at the count of rows that
already carry its prefix.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'number_counters',
        sa.Column('prefix', sa.String(length=32), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('prefix'),
    )


def downgrade() -> None:
    op.drop_table('number_counters')
