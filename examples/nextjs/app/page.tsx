import DocumentList from '@/components/DocumentList'
import { syncUrl } from '@/lib/config'

export const dynamic = 'force-dynamic'

export default function Home () {
  return <DocumentList syncUrl={syncUrl()} />
}
