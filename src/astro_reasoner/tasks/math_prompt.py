"""The math task's prompt: instruction, system prompt and worked examples (``prompts.PromptConfig``'s defaults).

Here, below ``prompts``, so that a task can tell the math defaults from a customized prompt without importing
the module that builds the messages (which asks the tasks for their parts).
"""

# Our wording; the paper does not publish its search prompt. It states the two things the search relies on.
STEP_INSTRUCTION = (
    "Solve the following math problem step by step. Separate the steps with a blank line. "
    "Put the final answer in \\boxed{{}} at the end of the last step.\n\n{problem}"
)

SYSTEM_PROMPT = "You are a helpful assistant that solves math problems carefully."

# Worked examples in the same format (written by us), used when few_shot > 0. Small models such as
# SmolLM2-135M follow the step/boxed format far more often with them. Measured on SmolLM2-135M (20
# synthetic 2-step problems x 4 samples, T=0.5): with the apples example alone the model multiplies
# whatever it sees and 58 % of samples have a boxed answer; with the stickers example (+ and -) first,
# 96-99 % do and accuracy goes from 0-5 % to 5-7.5 %.
FEW_SHOT = (
    (
        "Sara has 15 stickers. She buys 6 more stickers. Then she gives 4 stickers to her friend. "
        "How many stickers does Sara have now?",
        "Sara starts with 15 stickers and buys 6 more, so she has 15 + 6 = 21 stickers."
        "\n\nShe gives away 4 stickers, so she has 21 - 4 = 17 stickers."
        "\n\nThe answer is \\boxed{17}.",
    ),
    (
        "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?",
        "There are 3 boxes with 4 apples each, so Tom has 3 * 4 = 12 apples."
        "\n\nHe eats 2 apples, so 12 - 2 = 10 apples are left."
        "\n\nThe answer is \\boxed{10}.",
    ),
)
