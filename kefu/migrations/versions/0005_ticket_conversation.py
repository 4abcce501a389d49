"""tickets know the conversation they were opened from

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:00:00.000000

``tickets.conversation_id`` (nullable: imported and older tickets have none) lets the desk push a ticket's
status changes, rating requests and SLA updates to the customer's conversation (kefu/desk/followups.py).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('conversation_id', sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f('ix_tickets_conversation_id'), ['conversation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_conversation_id'))
        batch_op.drop_column('conversation_id')
