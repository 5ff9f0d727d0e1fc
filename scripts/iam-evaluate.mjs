// Evaluates requests against IAM policies with @cloud-copilot/iam-simulate
// (package.json pins it; `make node` installs it into node_modules).
//
// stdin: a JSON array of cases, each
//   { id, principal, action, resource, context,
//     identityPolicies: [{ name, policy }], resourcePolicy: { name, policy } | null }
// stdout: a JSON array, in the same order, of
//   { id, result: "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied" | "Error",
//     allowedBy: ["policy/Sid", ...], deniedBy: [...], error }
// The account is the resource's (every case here is same-account).

import { runSimulation } from '@cloud-copilot/iam-simulate'

const ACCOUNT = '123456789012'

function statementsOf(analysis, kind) {
  return (analysis?.[kind] ?? []).map(
    (s) => `${s.policyId ?? 'resource policy'}/${s.explain?.identifier ?? '(no Sid)'}`
  )
}

async function evaluate(c) {
  const simulation = {
    identityPolicies: c.identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: c.resourcePolicy ? c.resourcePolicy.policy : undefined,
    request: {
      action: c.action,
      principal: c.principal,
      resource: { accountId: ACCOUNT, resource: c.resource },
      contextVariables: c.context ?? {}
    }
  }
  const r = await runSimulation(simulation, {})
  if (r.resultType === 'error') {
    return { id: c.id, result: 'Error', allowedBy: [], deniedBy: [], error: JSON.stringify(r.errors) }
  }
  if (r.resultType !== 'single') {
    return { id: c.id, result: 'Error', allowedBy: [], deniedBy: [], error: `unexpected ${r.resultType} result` }
  }
  const a = r.result.analysis
  const resourceName = c.resourcePolicy ? c.resourcePolicy.name : 'resource policy'
  const rename = (names) => names.map((n) => n.replace(/^resource policy\//, `${resourceName}/`))
  return {
    id: c.id,
    result: r.overallResult,
    allowedBy: [
      ...statementsOf(a?.identityAnalysis, 'allowStatements'),
      ...rename(statementsOf(a?.resourceAnalysis, 'allowStatements'))
    ],
    deniedBy: [
      ...statementsOf(a?.identityAnalysis, 'denyStatements'),
      ...rename(statementsOf(a?.resourceAnalysis, 'denyStatements'))
    ]
  }
}

let input = ''
for await (const chunk of process.stdin) input += chunk
const cases = JSON.parse(input)
const out = []
for (const c of cases) out.push(await evaluate(c))
process.stdout.write(JSON.stringify(out) + '\n')
