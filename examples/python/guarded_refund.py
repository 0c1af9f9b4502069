"""Against the quickstart's server (README): a guarded function, one allowed call, one held for a
human, waited for while you grant it with the approver's token.

    pip install ./clients/python
    REINS_TOKEN=$AGENT python examples/python/guarded_refund.py
"""

from reins import ApprovalRequired, Denied, guard


@guard("crm.note")
def note(customer: str, text: str) -> str:
    return f"noted for {customer}: {text}"


@guard("payments.refund", on_approval="wait")
def refund(order_id: str, amount: int, currency: str = "EUR") -> str:
    return f"refunded {amount} {currency} on {order_id}"


if __name__ == "__main__":
    print(note("c-42", "called about a refund"))
    print("refund: waiting for an approver (POST /v1/approvals/<id>/grant) ...")
    try:
        print(refund("o-17", 40))
    except ApprovalRequired as held:
        print(f"not approved in time: {held.approval_id}")
    except Denied as denied:
        print(f"denied: {denied}")
