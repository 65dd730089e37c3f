/** ELB options: the target group this node joins when healthy and leaves first when it stops. */
import { constant, option, type OptionArea, text } from './config-parsers.js'

export const ELB_OPTIONS = [
  option({
    key: 'elbTargetGroup', flag: '--elb-target-group <arn>', env: 'ESPRA_ELB_TARGET_GROUP', defaultText: '(none)',
    doc: 'ELBv2 target group (ALB or NLB) this node registers itself in (public port) once healthy, and leaves on stop before draining: deregister, then wait while the target drains, at most the group\'s deregistration delay; region and credentials from the AWS chain',
    details: "ELBv2 target group (ALB or NLB) this node registers itself in (public port) once its health is ok, and leaves first when it stops: deregister, then serve while the target drains until AWS says `unused`, at most the group's `deregistration_delay.timeout_seconds`; region and credentials from the standard AWS chain; AWS errors are one `error` line and never keep the node up or down",
    default: constant(null),
    parse: text(/^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup\/[A-Za-z0-9-]{1,32}\/[0-9a-f]{16}$/, 'a target group ARN, arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>'),
  }),
  option({
    key: 'elbTargetId', flag: '--elb-target-id <id>', env: 'ESPRA_ELB_TARGET_ID', defaultText: 'the --advertise address',
    doc: 'this node in --elb-target-group: an instance id (i-...) for instance targets; IP targets use the --advertise address',
    default: constant(null), parse: text(/^(i-[0-9a-f]{8,17}|[0-9.]{7,15}|[0-9a-fA-F:]{2,39})$/, 'an instance id (i-...) or an IP address'),
  }),
] as const

export const ELB_AREA: OptionArea<typeof ELB_OPTIONS> = { heading: 'Load balancer (ELB)', options: ELB_OPTIONS }
