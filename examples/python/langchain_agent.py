"""LangChain v1 with Reins in front of every tool call: one middleware line.

    pip install './clients/python[langchain]' langchain-openai
    REINS_TOKEN=$AGENT OPENAI_API_KEY=... python examples/python/langchain_agent.py
"""

from langchain.agents import create_agent
from langchain_core.tools import tool

from reins.langchain import ReinsMiddleware


@tool("crm.note")
def crm_note(customer: str, text: str) -> str:
    """Add a note to a customer record."""
    return "noted"


agent = create_agent(
    "openai:gpt-4.1-mini", [crm_note], middleware=[ReinsMiddleware(on_approval="deny")]
)

if __name__ == "__main__":
    result = agent.invoke({"messages": [{"role": "user", "content": "Note that c-42 called."}]})
    print(result["messages"][-1].content)
