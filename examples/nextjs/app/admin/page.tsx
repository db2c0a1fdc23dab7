import Metrics from '@/components/Metrics'

export const dynamic = 'force-dynamic'

export default function AdminPage () {
  return <Metrics />
}
