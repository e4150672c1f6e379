// Reading EXPLAIN (ANALYZE, FORMAT JSON) plans: what a statement read and how the planner shaped it. Used by the
// claim benches and by test/claim-cost.test.ts.

export type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };

/** Actual rows over all loops of the nodes `pick` selects, anywhere in the plan. */
export function planRows(node: PlanNode, pick: (n: PlanNode) => boolean): number {
  const own = pick(node) ? Number(node['Actual Rows'] ?? 0) * Number(node['Actual Loops'] ?? 0) : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + planRows(child, pick), 0);
}

/** Every node `pick` selects, anywhere in the plan. */
export function planNodes(node: PlanNode, pick: (n: PlanNode) => boolean): PlanNode[] {
  return [...(pick(node) ? [node] : []), ...(node.Plans ?? []).flatMap((child) => planNodes(child, pick))];
}

/** An index scan of webhooks.deliveries. */
export const deliveriesIndexScan = (n: PlanNode) =>
  n['Relation Name'] === 'deliveries' && String(n['Node Type']).includes('Index');

/**
 * Node types, relations, indexes and CTEs, indented: the plan without timings; with `counts`, each node's actual
 * rows × loops too (leave them out to compare two plans node for node).
 */
export function planShape(node: PlanNode, { counts = false } = {}, depth = 0): string {
  const text = (key: string) => (typeof node[key] === 'string' ? node[key] : '');
  const relation = text('Relation Name') === '' ? '' : ` on ${text('Relation Name')}`;
  const index = text('Index Name') === '' ? '' : ` using ${text('Index Name')}`;
  const cte = text('CTE Name') === '' ? '' : ` ${text('CTE Name')}`;
  const sub = text('Subplan Name') === '' ? '' : ` [${text('Subplan Name')}]`;
  const loops =
    !counts || node['Actual Loops'] === undefined
      ? ''
      : ` (rows ${Number(node['Actual Rows'])} × loops ${Number(node['Actual Loops'])})`;
  return [
    `${'  '.repeat(depth)}${text('Node Type')}${relation}${index}${cte}${sub}${loops}`,
    ...(node.Plans ?? []).map((c) => planShape(c, { counts }, depth + 1)),
  ].join('\n');
}
